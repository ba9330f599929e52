"""The ``aver-fast`` commands, one module each: ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> exit code``, a thin layer of options over one library call. They sit side by side: none imports
another; what they do lives below them (:mod:`aver_fast.training`, :mod:`aver_fast.evaluation`,
:mod:`aver_fast.predict_videos`, :mod:`aver_fast.demo`, :mod:`aver_fast.export`, ...)."""
