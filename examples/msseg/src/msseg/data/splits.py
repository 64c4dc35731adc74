"""Which scans train, validate and test: a run's split and the paper's cross-validation rounds.

- `split_scans`: the scans left after `exclude`; `val` validates (default: the last remaining
  scan in alphabetical order, as in the paper's cross-validation); the rest train.
- `cv_rounds` (paper §3.2): scans grouped by centre and sorted alphabetically; round k tests the
  k-th scan of every centre (5 rounds of 3 test scans for MSSEG). Of the remaining scans, sorted
  alphabetically, the LAST one validates (early stopping and the best checkpoint) and the others
  train (11 for MSSEG): 08037ROGU in rounds 1-4 and 08031SEVE in round 5.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from msseg.io.discovery import ScanRecord

__all__ = ["CvRound", "cv_rounds", "split_scans"]


def split_scans(
    records: Sequence[ScanRecord], *, val: Sequence[str] = (), exclude: Sequence[str] = ()
) -> tuple[list[ScanRecord], list[ScanRecord]]:
    """(training, validation) records: `exclude` left out; `val` validates (default: the last
    remaining scan in alphabetical order, as the paper's cross-validation); the rest train.

    Raises:
        ValueError: an unknown patient id, or fewer than one training and one validation scan.
    """
    ids = [r.patient_id for r in records]
    unknown = sorted((set(val) | set(exclude)) - set(ids))
    if unknown:
        raise ValueError(f"unknown patient id(s) {unknown}; the data has {ids}")
    kept = sorted((r for r in records if r.patient_id not in exclude), key=lambda r: r.patient_id)
    chosen = set(val) if val else {kept[-1].patient_id} if kept else set()
    validation = [r for r in kept if r.patient_id in chosen]
    training = [r for r in kept if r.patient_id not in chosen]
    if not training or not validation:
        raise ValueError(f"need at least one training and one validation scan; got "
                         f"{len(training)} and {len(validation)} from {len(records)} scans "
                         f"(excluded {list(exclude)})")
    return training, validation


@dataclass(frozen=True)
class CvRound:
    """One round of the protocol: which scans test, train and validate."""

    number: int  # 1-based
    test: tuple[ScanRecord, ...]  # the round-th scan of every centre
    train: tuple[ScanRecord, ...]
    val: ScanRecord  # the last remaining scan in alphabetical order


def cv_rounds(records: Sequence[ScanRecord]) -> list[CvRound]:
    """The paper's rounds for `records` (see the module docstring).

    Returns:
        As many rounds as the largest centre has scans; a centre with fewer scans has no test
        scan in the last rounds, so every scan is tested exactly once.
    Raises:
        ValueError: a scan without centre or mask, or a round with fewer than 2 remaining scans.
    """
    unknown = [r.patient_id for r in records if r.centre is None or r.mask is None]
    if unknown:
        raise ValueError(f"cross-validation needs a centre and a mask for every scan; missing for "
                         f"{unknown}. Use the MSSEG layout, a BIDS dataset whose participants.tsv "
                         f"has a site column, or a CSV with mask and centre columns (an nnU-Net "
                         f"dataset.json names no centres).")
    ordered = sorted(records, key=lambda r: r.patient_id)
    centres: dict[str, list[ScanRecord]] = {}
    for record in ordered:
        centres.setdefault(record.centre, []).append(record)
    rounds = []
    for k in range(max(len(scans) for scans in centres.values())):
        test = tuple(scans[k] for _, scans in sorted(centres.items()) if k < len(scans))
        rest = [r for r in ordered if r not in test]
        if len(rest) < 2:
            raise ValueError(f"round {k + 1} leaves {len(rest)} scan(s) for training and "
                             f"validation; cross-validation needs at least 2")
        rounds.append(CvRound(k + 1, test, tuple(rest[:-1]), rest[-1]))
    return rounds
