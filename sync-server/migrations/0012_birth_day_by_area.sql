-- The residents' index by day of birth, for the turning-14 lookup (years, the window's days,
-- an area). Under (year, day, area) a commune's residents fall on random leaves of a
-- province's index (the day is a keyed hash): a commune's first push wrote some 37,000 of
-- them. On SQLite it becomes (year, area, day): a commune's residents fall on one run of
-- leaves a year of birth, and the lookup reads each year's range of the area once, testing
-- the days within the index. PostgreSQL keeps (year, day, area) under the new name: its
-- B-tree (before version 17) scans once for each value of an `IN` list on a column after a
-- range, so with the area first a province's page read the province's two years 180 times,
-- and the planner read the whole table instead (0.43–0.51 s, against 0.08 s) (issue 14).
CREATE INDEX IF NOT EXISTS person_by_birth ON person {birth_index};
DROP INDEX IF EXISTS person_by_birth_day;
