"""The atomic writer leaves the permissions open() would: 0o666 less the umask, or an existing file's own."""
import os
import stat

import pytest

from mask3d_vit.io import write_text

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")


@pytest.fixture(autouse=True)
def restore_umask():
    before = os.umask(0o022)
    os.umask(before)
    yield
    os.umask(before)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_new_files_follow_the_umask(tmp_path, mask, mode):
    os.umask(mask)
    write_text(tmp_path / "config.yaml", "a: 1\n")
    with open(tmp_path / "plain.txt", "w") as f:  # the reference: what open() does under the same umask
        f.write("a: 1\n")
    assert stat.S_IMODE((tmp_path / "config.yaml").stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode) == mode


def test_rewriting_keeps_the_existing_mode(tmp_path):
    os.umask(0o022)
    target = tmp_path / "metrics.jsonl"
    write_text(target, "old\n")
    target.chmod(0o640)
    write_text(target, "new\n")
    assert target.read_text() == "new\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
