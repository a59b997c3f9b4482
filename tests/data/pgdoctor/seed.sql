CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL, tag text);
INSERT INTO notes (body, tag) VALUES ('from the fixture', 'a'), ('another', 'b');
