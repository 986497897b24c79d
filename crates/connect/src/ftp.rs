//! Placeholder: the ftp tester is being written.
