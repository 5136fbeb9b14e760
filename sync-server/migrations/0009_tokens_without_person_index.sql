-- The residents' index tokens were indexed a second time by resident, for one reader: the
-- deletion of a resident who left their household. It now deletes each of the resident's
-- tokens by its key, computed again from the resident's stored entry (store/tx.rs,
-- remove_person_blocks), and every token written costs one index entry, not two (issue 15).
DROP INDEX IF EXISTS person_block_by_person;
