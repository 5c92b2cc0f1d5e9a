"""The read side of the records: sweep folders -> tables (tables.py) -> figures (figures/, one module
per family) -> report (report.py). Imports no torch and no training code, so any sweep folder from
any launcher can be analyzed on a machine without a GPU stack."""
