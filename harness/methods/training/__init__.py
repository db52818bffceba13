"""The training side of the method plugins: networks (and the objectives and servers built on them) that need
torch. A plugin in harness/methods declares and registers its method without them and imports its module here
from the hooks that build or train, so listing, checking and planning never load torch."""
