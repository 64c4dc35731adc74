"""The one atomic writer: complete files or none, and no partial left behind by a killed writer."""

import errno
import os
import shutil
import signal
import subprocess
import sys
import textwrap

import pytest
from msseg.io.atomic import (
    atomic_path,
    atomic_paths,
    atomic_write_text,
    check_writable,
    partial_path,
    remove_stale_partials,
)


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


def test_a_full_disk_is_one_line_naming_the_file_and_keeps_the_old_one(tmp_path):
    target = atomic_write_text(tmp_path / "pred" / "scan_mask.nii.gz", "old")
    with pytest.raises(OSError) as caught, atomic_path(target) as temporary:
        temporary.write_bytes(b"half a mask")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(temporary))
    message = str(caught.value)
    assert caught.value.errno == errno.ENOSPC and "\n" not in message
    assert message.startswith(f"{target}: cannot write it (No space left on device)")
    assert "free space there or choose another folder" in message
    assert target.read_text() == "old" and os.listdir(target.parent) == ["scan_mask.nii.gz"]


def test_an_error_about_another_file_is_not_blamed_on_the_target(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"input\.nii"), atomic_path(tmp_path / "out.txt"):
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", "input.nii")
    assert os.listdir(tmp_path) == []


def test_a_group_keeps_its_old_files_until_every_new_one_is_written(tmp_path):
    prob, mask = tmp_path / "x_prob.nii.gz", tmp_path / "x_mask.nii.gz"
    for path in (prob, mask):
        path.write_text("old")
    with pytest.raises(OSError, match=r"x_mask\.nii\.gz: cannot write it"), \
            atomic_paths([prob, mask]) as (prob_tmp, mask_tmp):
        prob_tmp.write_text("new")
        raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT), str(mask_tmp))
    assert (prob.read_text(), mask.read_text()) == ("old", "old")
    assert sorted(os.listdir(tmp_path)) == ["x_mask.nii.gz", "x_prob.nii.gz"]
    with atomic_paths([mask], remove=[prob]) as (mask_tmp,):
        mask_tmp.write_text("new")
    assert os.listdir(tmp_path) == ["x_mask.nii.gz"] and mask.read_text() == "new"


def test_check_writable_before_long_work(tmp_path, monkeypatch):
    check_writable(tmp_path / "not" / "yet")  # checked at the nearest existing folder
    assert os.listdir(tmp_path) == []  # the probe is gone, nothing created
    (tmp_path / "file").write_text("x")
    with pytest.raises(OSError, match="is a file, expected a folder"):
        check_writable(tmp_path / "file" / "out")
    usage = shutil.disk_usage(tmp_path)._replace(free=3 * 2**20)
    monkeypatch.setattr("msseg.io.atomic.shutil.disk_usage", lambda path: usage)
    with pytest.raises(OSError) as caught:
        check_writable(tmp_path / "out", need_bytes=5 * 2**20)
    assert caught.value.errno == errno.ENOSPC
    assert str(caught.value) == (f"{tmp_path / 'out'}: 3.0 MiB free on its disk, the outputs "
                                 "need about 5.0 MiB; free space there or choose another output "
                                 "folder")
