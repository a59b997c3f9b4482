-- The doctor's fixture: what CI's fresh checkout protects.
CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL);
INSERT INTO notes (text) VALUES ('first fixture note'), ('second fixture note');
