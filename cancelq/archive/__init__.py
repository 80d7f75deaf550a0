"""The archive: settled and dead jobs kept for good in a relational database (SQLAlchemy
Core over PostgreSQL, or SQLite through the same code), beneath the operator back-ends."""
