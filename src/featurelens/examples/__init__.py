"""End-to-end studies built from the library (``featurelens demo`` and ``featurelens example ...``).

``featurelens.examples.hedging`` (deep-hedging simulation, hedger, risk measures) and
``featurelens.examples.tickets`` hold the robust-ticket study's building blocks;
``featurelens.examples.finance``, ``.healthcare`` and ``.dynamics`` the other examples;
:func:`window_mlp` and :func:`save_exported` are the reliance study's model and its
``torch.export`` file (what ``featurelens reliance`` loads).
"""

from featurelens.examples._reliance_study import save_exported, window_mlp
from featurelens.examples._spurious_demo import DemoResult, run_spurious_demo
from featurelens.examples.dynamics import run_dynamics_example
from featurelens.examples.finance import run_finance_example
from featurelens.examples.healthcare import run_healthcare_example
from featurelens.examples.tickets import TicketsConfig, run_tickets_study

__all__ = [
    "DemoResult",
    "TicketsConfig",
    "run_dynamics_example",
    "run_finance_example",
    "run_healthcare_example",
    "run_spurious_demo",
    "run_tickets_study",
    "save_exported",
    "window_mlp",
]
