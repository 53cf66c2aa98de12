"""Where an output cannot go, for the tests of every command that writes one.

Relative to a folder holding a regular file `a-file`; /proc takes no new
files even from root, so it stands for an unwritable folder.
"""

UNWRITABLE_FOLDERS = {
    "an existing file": "a-file",
    "a path under a file": "a-file/sub",
    "a folder that takes no files": "/proc",
    "a folder that cannot be made": "/proc/seqmnist-test",
}
