"""The ``aver-fast`` commands, one module each: ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> exit code``. They sit side by side: none imports another; what they share lives below them
(:mod:`aver_fast.config`, :mod:`aver_fast.inference`, :mod:`aver_fast.plots`, :mod:`aver_fast.checkpoint`)."""
