"""Writers that produce Databento files (DBN and CSV) in a test's tmp_path."""
