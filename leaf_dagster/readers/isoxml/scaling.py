"""DDI resolution or the device's own value presentation (DVP): which scale a logged value is in.

The data dictionary's resolution is the rule (isoxml.md 3.6): a DVP is how a terminal *shows* a value,
and real DVPs are wrong in both directions (a Fendt DVP scales total yield mass in kg as if it were grams,
1000x off). Some old writers, though, log in the units their DVP states instead of the DDI's (moisture in
0.1 % steps where the DDI says ppm). Only the values can tell: the DVP is used when the values are
impossible in DDI units and plausible in the DVP's, and the reader says so.
"""

from __future__ import annotations

import re

import numpy as np

from .taskdata import Presentation

# Plausible range of a harvest moisture in percent (dry grain to fresh grass).
MOISTURE_RANGE = (1.0, 95.0)
_PERCENT = re.compile(r"%|proz|percent|pourcent", re.IGNORECASE)
# ppm -> % is the DDI rule for every moisture and dry-matter DDI (99, 262, 314)
_PPM_TO_PERCENT = 1e-4


def scale_choice(ddi: int, logged: np.ndarray, presentation: Presentation | None,
                 plausible: tuple[float, float]) -> tuple[float, str | None]:
    """Factor from raw to percent for a ppm DDI, and a note when the DVP's scale was chosen instead.

    The typical value (median of the non-zero logged values) decides: DDI units first; the DVP only when
    its unit is a percentage, it has no offset, and its value is plausible where the DDI's is not."""
    values = logged[np.isfinite(logged) & (logged != 0)]
    if len(values) == 0:
        return _PPM_TO_PERCENT, None
    typical = float(np.median(np.abs(values)))
    low, high = plausible
    if low <= typical * _PPM_TO_PERCENT <= high:
        return _PPM_TO_PERCENT, None
    if presentation is not None and presentation.offset == 0 and _PERCENT.search(presentation.unit) \
            and low <= typical * presentation.scale <= high:
        return presentation.scale, (f"DDI {ddi} values read in ppm would be {typical * _PPM_TO_PERCENT:.4g} %, "
                                    f"impossible for a harvest; the device's value presentation (scale "
                                    f"{presentation.scale:g}, unit {presentation.unit!r}) gives "
                                    f"{typical * presentation.scale:.4g} %, so it is used")
    return _PPM_TO_PERCENT, (f"DDI {ddi} values are {typical * _PPM_TO_PERCENT:.4g} % in DDI units, outside "
                             f"{low:g}-{high:g} %, and no value presentation explains them: kept as logged")
