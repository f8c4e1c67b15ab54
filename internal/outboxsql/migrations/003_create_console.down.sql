DROP TABLE IF EXISTS txoutbox_actions;
DROP TABLE IF EXISTS txoutbox_samples;
