-- PostgreSQL's planner guessed 297,486 distinct tokens in a province's base level (22.6 million
-- entries, 13.1 million distinct): ANALYZE's sample meets the few keys that thousands share (a
-- common name and year) and its estimate of the rest falls by forty times. A lookup of 8,000
-- tokens was then expected to return 600,000 rows and planned as a parallel scan of the whole
-- table: 2.3–3 s a statement, a commune's first push 65 s against 6 s on an empty server
-- (issue 14). A blocking key belongs to a household or to a few people; the levels say so:
-- about one distinct token for every two entries. SQLite plans by rule: nothing to say there.
{token_statistics}
