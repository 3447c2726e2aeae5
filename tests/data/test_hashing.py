import hashlib

from tunesmith.data.hashing import file_sha256


def test_file_sha256_is_the_digest_of_the_whole_file(tmp_path):
    content = bytes(range(256)) * 5000  # over 1 MiB, so a reader that stops after one block would differ
    path = tmp_path / "data.bin"
    path.write_bytes(content)
    assert file_sha256(path) == hashlib.sha256(content).hexdigest()
    assert file_sha256(path) != hashlib.sha256(content[: 1 << 20]).hexdigest()
