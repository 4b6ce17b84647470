"""End-to-end tests: root, a private namespace per test, real packets through real interfaces."""
