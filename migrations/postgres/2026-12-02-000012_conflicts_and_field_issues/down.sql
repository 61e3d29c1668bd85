DROP TABLE link_field_issues;
ALTER TABLE connections DROP COLUMN conflict_policy;
