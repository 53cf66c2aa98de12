"""`seqmnist --help`, `seqmnist presets` and `import seqmnist` start without loading torch."""

import subprocess
import sys

import pytest

PROBE = """
import sys
{code}
print(sorted(name for name in ("torch", "numpy", "safetensors", "matplotlib") if name in sys.modules))
"""


def heavy_modules_after(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(code=code)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize(
    "code",
    [
        "import seqmnist",
        "import seqmnist.cli",
        "from seqmnist.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass",
        "from seqmnist.cli import main\nmain(['presets'])",
        "from seqmnist.cli import main\nmain(['presets', 'ref2-lstm128'])",
        "from seqmnist.cli import main\ntry:\n    main(['train', '--help'])\nexcept SystemExit:\n    pass",
    ],
    ids=["import", "import cli", "--help", "presets", "presets NAME", "train --help"],
)
def test_starts_without_torch(code):
    assert heavy_modules_after(code) == "[]"


def test_the_api_is_still_there_on_first_use():
    import seqmnist

    assert callable(seqmnist.train) and callable(seqmnist.evaluate_run)
    assert seqmnist.Runtime.__name__ == "Runtime"
    assert seqmnist.__version__ != ""
    with pytest.raises(AttributeError):
        seqmnist.no_such_name  # noqa: B018


def test_no_module_imports_the_package_root():
    from pathlib import Path

    package = Path(__file__).resolve().parents[2] / "src" / "seqmnist"
    offenders = [
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if path.name != "__init__.py" or path.parent != package
        if any(
            line.strip() in ("import seqmnist", "from seqmnist import __version__")
            for line in path.read_text().splitlines()
        )
    ]
    assert offenders == []
