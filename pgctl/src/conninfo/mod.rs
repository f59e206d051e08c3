//! libpq-compatible connection strings: parsing, building, resolution.
