"""``python -m pyarallel``: the same as the ``pyarallel`` command (see ``pyarallel._cli``)."""

from pyarallel._cli import main

raise SystemExit(main())
