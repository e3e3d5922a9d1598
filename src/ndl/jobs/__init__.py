"""The controlled tier: researchers' code taken to the data.

A *job bundle* (:mod:`.bundle`) is a Python script or a SQL query with declared outputs and a
chosen environment. Stewards review its code (:mod:`.service`); approved code runs at the
datasite in the sandbox (:mod:`.sandbox`) through the runner (:mod:`.runner`), whose output
helpers (:mod:`ndl.job`) leave evidence that a second, trusted step recomputes
(:mod:`.evidence`) before the shared disclosure checks (:mod:`ndl.privacy.sdc`) and the release
ledger run. Output checkers then release, return or reject (:mod:`.checking`).
"""
