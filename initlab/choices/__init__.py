"""One object per choice of the ``activation`` and ``init`` config groups, in one registry each.

An activation carries its torch module, its Gaussian expectations for the mean-field theory
(phi and phi'), its saturation rule and its plot colour; an init its fill, its sigma_w^2 and its
plot colour and dashes. Registry order is plot order. Adding a choice is one YAML file under
``conf/activation/`` or ``conf/init/`` plus one entry here (tests check the two agree).
Importing this package loads no torch: fills and module factories import it when called.
"""

from initlab.choices.activations import ACTIVATIONS, Activation, build_activation
from initlab.choices.inits import INITS, Init

__all__ = ["ACTIVATIONS", "Activation", "INITS", "Init", "build_activation"]
