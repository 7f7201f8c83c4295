"""Support code for the project's tests and benches (throwaway servers, daemons, helpers).

Installed with the package so tests and bench scripts import it the same way, without
`sys.path` inserts. Nothing in the product imports it.
"""
