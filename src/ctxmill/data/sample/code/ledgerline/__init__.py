"""ledgerline: invoices, payments and the customer ledger for small B2B teams."""

__version__ = "0.14.0"
