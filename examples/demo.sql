-- A small app database for the quickstart (examples/demo.sqlite is built from this file:
-- sqlite3 examples/demo.sqlite < examples/demo.sql).
PRAGMA foreign_keys=ON;
CREATE TABLE users(id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE, name TEXT, created_at TEXT DEFAULT CURRENT_TIMESTAMP);
CREATE TABLE posts(id INTEGER PRIMARY KEY AUTOINCREMENT, user_id INTEGER NOT NULL REFERENCES users(id), title TEXT, body TEXT, snowflake INTEGER, score REAL);
CREATE INDEX posts_user ON posts(user_id);
CREATE VIRTUAL TABLE posts_fts USING fts5(title, body, content='posts', content_rowid='id');
CREATE TRIGGER posts_ai AFTER INSERT ON posts BEGIN
  INSERT INTO posts_fts(rowid, title, body) VALUES (new.id, new.title, new.body);
END;
CREATE VIEW user_posts AS SELECT u.name, p.title FROM users u JOIN posts p ON p.user_id = u.id;
INSERT INTO users(id, email, name, created_at) VALUES
  (1, 'ada@example.com', 'Ada', '2026-01-01 10:00:00'),
  (2, 'grace@example.com', 'Grace ✓', '2026-01-02 11:30:00');
INSERT INTO posts(user_id, title, body, snowflake, score) VALUES
  (1, 'Hello, D1', 'First post.
It has two lines.', 1234567824702058496, 0.1),
  (2, 'Backups', 'Restore them, or they are hopes.', 9007199254740993, 4.5),
  (1, 'Quotes', 'It''s "quoted"', -9223372036854775808, 1e308);
