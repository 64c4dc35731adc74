"""The one atomic writer: complete files or none, and no partial left behind by a killed writer."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest
from msseg.io.atomic import atomic_path, atomic_write_text, partial_path, remove_stale_partials


def test_partial_names_keep_the_suffixes_and_name_the_process(tmp_path):
    assert partial_path(tmp_path / "scan_mask.nii.gz", pid=42) == (
        tmp_path / ".scan_mask.42.partial.nii.gz")
    assert partial_path(tmp_path / "last.pt").name == f".last.{os.getpid()}.partial.pt"
    assert partial_path(tmp_path / "01016SACH-ab12", pid=7).name == ".01016SACH-ab12.7.partial"


def test_a_failing_writer_leaves_the_old_file_and_no_partial(tmp_path):
    target = atomic_write_text(tmp_path / "out" / "table.md", "old\n")
    with pytest.raises(RuntimeError, match="writer crashed"), atomic_path(target) as temporary:
        temporary.write_text("half")
        raise RuntimeError("writer crashed")
    assert target.read_text() == "old\n"
    assert os.listdir(target.parent) == ["table.md"]
    with pytest.raises(OSError, match="empty file"), atomic_path(target) as temporary:
        temporary.write_bytes(b"")
    with pytest.raises(OSError, match="did not create it"), atomic_path(target):
        pass
    assert target.read_text() == "old\n" and os.listdir(target.parent) == ["table.md"]


def test_folders_are_written_whole(tmp_path):
    with atomic_path(tmp_path / "entry") as temporary:
        temporary.mkdir()
        (temporary / "a.npy").write_bytes(b"1")
    assert sorted(os.listdir(tmp_path)) == ["entry"] and (tmp_path / "entry" / "a.npy").is_file()
    with pytest.raises(OSError, match="empty folder"), atomic_path(tmp_path / "none") as temporary:
        temporary.mkdir()
    assert sorted(os.listdir(tmp_path)) == ["entry"]


def test_the_partial_of_a_killed_writer_is_removed_by_the_next_write(tmp_path):
    """A writer killed with SIGKILL mid-write cannot clean up; the next write in the folder does,
    and leaves the partials of running processes alone."""
    script = textwrap.dedent(f"""
        import time
        from msseg.io.atomic import atomic_path
        with atomic_path({str(tmp_path / "last.pt")!r}) as temporary:
            temporary.write_bytes(b"half a checkpoint")
            print("writing", flush=True)
            time.sleep(60)
    """)
    writer = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline() == "writing\n"
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    stale = partial_path(tmp_path / "last.pt", pid=writer.pid)
    assert stale.is_file()
    (tmp_path / ".busy.1.partial.pt").write_text("pid 1 runs")  # a live writer's partial
    atomic_write_text(tmp_path / "history.csv", "epoch\n")
    assert sorted(os.listdir(tmp_path)) == [".busy.1.partial.pt", "history.csv"]
    assert remove_stale_partials(tmp_path / "missing") == []
