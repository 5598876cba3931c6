"""Resuming after a halt: the gate, the suspension record and its report, ungated resumes caught.

:mod:`~breakglass.resume.config` is the ``[resume]`` policy section;
:mod:`~breakglass.resume.gate` decides what is still missing;
:mod:`~breakglass.resume.record` assembles one halt episode for the audit chain
and the report; :mod:`~breakglass.resume.watch` sees halts and resumes made
outside serve.
"""
