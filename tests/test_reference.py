"""The released files kept in tests/reference are byte for byte the released ones: each file's git blob id equals
the one its repository's tree lists at the recorded commit (released_tree.txt, `git ls-tree -r` output there)."""
import hashlib
from pathlib import Path

import pytest

REFERENCE = Path(__file__).resolve().parent / "reference"
RELEASES = ("MixCLDehazeNet", "MixDehazeNet")


def blob_id(path: Path) -> str:
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@pytest.mark.parametrize("release", RELEASES)
def test_kept_files_are_the_released_ones(release):
    folder = REFERENCE / release
    listed = {}
    for line in (folder / "released_tree.txt").read_text().splitlines():
        mode_type_blob, path = line.split("\t")
        listed[path] = mode_type_blob.split()[2]
    kept = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    assert kept - {"released_tree.txt"} == set(listed), "files kept here and files listed differ"
    changed = [path for path, blob in listed.items() if blob_id(folder / path) != blob]
    assert not changed, f"changed from the release: {changed}"
