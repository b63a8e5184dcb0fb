"""Every private scikit-learn name the package uses, imported in one place.

scikit-learn does not promise to keep these stable; if one moves, this is the
only file to change. The oldest supported release (``scikit-learn>=1.6`` in
``setup.cfg``) is tested by ``.ci/run``.
"""

from sklearn.base import _fit_context
from sklearn.utils._param_validation import (
    HasMethods,
    Interval,
    Options,
    RealNotInt,
    StrOptions,
    validate_params,
)

__all__ = ["HasMethods", "Interval", "Options", "RealNotInt", "StrOptions", "_fit_context", "validate_params"]
