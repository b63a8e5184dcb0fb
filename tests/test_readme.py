"""The README's example must run as written."""

import re
import warnings
from pathlib import Path

import numpy as np
from sklearn.exceptions import ConvergenceWarning

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


def test_readme_mrf_example_runs(capsys):
    # The MRF section's example (issue 15), converging as written.
    text = README.read_text()
    section = text.split("## Markov random fields: UnfoldedMeanField and UnfoldedBP", 1)[1]
    code = re.search(r"```python\n(.*?)```", section.split("\n## ", 1)[0], re.S).group(1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # the example converges as written
        namespace = {}
        exec(compile(code, "README.md", "exec"), namespace)
    out = capsys.readouterr().out
    assert "best: {'lambda_'" in out and "denoised" in out
    search, X_test, Y_test = namespace["search"], namespace["X_test"], namespace["Y_test"]
    assert 1 - search.score(X_test, Y_test) < np.mean(X_test != Y_test) - 0.05
