"""The README's example must run as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_opens_with_the_two_commands():
    text = README.read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.S).group(1).strip().splitlines()
    assert block[0].endswith("python -m sklearn_unfold.demo")
    assert block[1].endswith("python -m pytest")
    assert text.index("```bash") < text.index("```python")


def test_readme_python_example_runs(capsys):
    code = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    namespace = {}
    exec(compile(code, str(README), "exec"), namespace)
    out = capsys.readouterr().out
    assert "SDR" in out and "n_layers" in out
    assert namespace["model"].loss_curve_[-1] <= namespace["model"].loss_curve_[0]


def test_ci_runs_the_readme_test_command_verbatim():
    text = README.read_text()
    command = re.search(r"```bash\n(.*?)```", text, re.S).group(1).strip().splitlines()[1]
    ci = (README.parent / ".ci" / "run").read_text().splitlines()
    assert command in ci
