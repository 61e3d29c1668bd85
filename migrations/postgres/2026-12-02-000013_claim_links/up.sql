-- Claim before acting upstream (S5, S7, S12, S16): an operation that writes
-- billing ids into Stages first inserts its links with a lease deadline. The
-- unique constraints already count such a claim, so of two writers one wins
-- before either touches Stages; reads treat it as not linked yet. NULL: a
-- confirmed link. A claim past its deadline may be taken over.
ALTER TABLE links ADD COLUMN claim_expires_at TIMESTAMP;
