-- Which lease owner (worker id, then a claim counter) wrote each run's
-- latest transition: lets operators, and the multi-process test, see how
-- work was shared between processes.
ALTER TABLE runs ADD COLUMN last_worker TEXT;
