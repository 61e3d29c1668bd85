DROP TABLE webhook_inbox;
DROP TABLE webhook_subscriptions;
DROP TABLE events;
