-- One database per service: each service owns its data.
CREATE DATABASE airt_registry;
CREATE DATABASE airt_policy;
CREATE DATABASE airt_workflow;
