"""The repository's own promises: the README's commands, CI running them, lint."""

import re
import subprocess
import sys

from .conftest import REPO

README = (REPO / "README.md").read_text()


def test_readme_opens_with_the_two_commands():
    blocks = re.findall(r"```\n(.*?)\n```", README, flags=re.S)
    assert blocks[0] == "pip install -e . && torchrun --nproc_per_node=3 -m fedrun.main"
    assert blocks[1] == "pip install -e '.[test]' && pytest"


def test_ci_runs_the_readme_test_command():
    grep = subprocess.run(
        ["bash", "-c", "grep -m1 \"^pip install -e '\\.\\[test\\]'\" README.md"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    assert grep.stdout.strip() == "pip install -e '.[test]' && pytest"
    assert 'eval "$cmd"' in (REPO / ".ci" / "run").read_text()


def test_ruff_lint_and_format():
    for args in (["check"], ["format", "--check"]):
        p = subprocess.run(
            [sys.executable, "-m", "ruff", *args, "fedrun", "tests"],
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        assert p.returncode == 0, p.stdout + p.stderr
