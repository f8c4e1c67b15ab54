DROP TABLE txoutbox_inbox;
