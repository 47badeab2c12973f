"""Evidence for auditors: the hash-chained audit log, signed export packs and their verification."""
