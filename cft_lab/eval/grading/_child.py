"""Entry point of the symbolic worker process: ``python -m cft_lab.eval.grading._child`` (see ``worker``).

A separate module so that running it does not re-execute ``cft_lab.eval.grading.worker``, which the package has already
imported.
"""

from cft_lab.eval.grading.worker import main

if __name__ == "__main__":
    main()
