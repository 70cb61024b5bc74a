"""River's AdaGrad with the loop invariants hoisted out of its per-weight loop.

Why: learning one example updates about 35 weights per model, and river's
``AdaGrad._step_with_dict`` asks the learning-rate scheduler (a property and a method
call) and looks up ``g2`` twice for every weight. The arithmetic is the same, so the
weights are identical; a learning step takes about a third less time.

Examples
--------
>>> from river import optim as river_optim
>>> a, b = AdaGrad(0.5), river_optim.AdaGrad(0.5)
>>> wa, wb = {"x": 1.0, "y": -2.0}, {"x": 1.0, "y": -2.0}
>>> for g in ({"x": 0.3, "y": -0.1}, {"x": -0.2, "y": 0.4}):
...     _ = a.step(wa, dict(g)), b.step(wb, dict(g))
>>> wa == wb
True
"""

from __future__ import annotations

from typing import Any

from river import optim


class AdaGrad(optim.AdaGrad):
    """:class:`river.optim.AdaGrad`, same parameters and results, faster steps."""

    def _step_with_dict(self, w: Any, g: Any) -> Any:
        lr = self.learning_rate
        eps = self.eps
        g2 = self.g2
        for i, gi in g.items():
            s = g2[i] + gi**2
            g2[i] = s
            w[i] -= lr / (s + eps) ** 0.5 * gi
        return w
