"""``python -m streams.actions``: the ``actions`` command without the ``segstream`` wrapper."""

from streams.actions.cli import actions

if __name__ == "__main__":
    actions(prog_name="segstream actions")
