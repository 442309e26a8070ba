PRAGMA foreign_keys=OFF;
BEGIN TRANSACTION;
CREATE TABLE studies (
	study_id INTEGER NOT NULL, 
	study_name VARCHAR(512) NOT NULL, 
	PRIMARY KEY (study_id)
);
INSERT INTO studies VALUES(1,'resnet18-relu');
CREATE TABLE version_info (
	version_info_id INTEGER NOT NULL, 
	schema_version INTEGER, 
	library_version VARCHAR(256), 
	PRIMARY KEY (version_info_id), 
	CHECK (version_info_id=1)
);
INSERT INTO version_info VALUES(1,12,'2.10.1');
CREATE TABLE study_directions (
	study_direction_id INTEGER NOT NULL, 
	direction VARCHAR(8) NOT NULL, 
	study_id INTEGER NOT NULL, 
	objective INTEGER NOT NULL, 
	PRIMARY KEY (study_direction_id), 
	UNIQUE (study_id, objective), 
	FOREIGN KEY(study_id) REFERENCES studies (study_id)
);
INSERT INTO study_directions VALUES(1,'MAXIMIZE',1,0);
CREATE TABLE study_user_attributes (
	study_user_attribute_id INTEGER NOT NULL, 
	study_id INTEGER, 
	"key" VARCHAR(512), 
	value_json TEXT, 
	PRIMARY KEY (study_user_attribute_id), 
	UNIQUE (study_id, "key"), 
	FOREIGN KEY(study_id) REFERENCES studies (study_id)
);
CREATE TABLE study_system_attributes (
	study_system_attribute_id INTEGER NOT NULL, 
	study_id INTEGER, 
	"key" VARCHAR(512), 
	value_json TEXT, 
	PRIMARY KEY (study_system_attribute_id), 
	UNIQUE (study_id, "key"), 
	FOREIGN KEY(study_id) REFERENCES studies (study_id)
);
CREATE TABLE trials (
	trial_id INTEGER NOT NULL, 
	number INTEGER, 
	study_id INTEGER, 
	state VARCHAR(8) NOT NULL, 
	datetime_start DATETIME, 
	datetime_complete DATETIME, 
	PRIMARY KEY (trial_id), 
	FOREIGN KEY(study_id) REFERENCES studies (study_id)
);
INSERT INTO trials VALUES(1,0,1,'COMPLETE','2026-11-30 19:39:57.563649','2026-11-30 19:40:03.601074');
INSERT INTO trials VALUES(2,1,1,'COMPLETE','2026-11-30 19:40:03.620020','2026-11-30 19:40:05.994247');
CREATE TABLE trial_user_attributes (
	trial_user_attribute_id INTEGER NOT NULL, 
	trial_id INTEGER, 
	"key" VARCHAR(512), 
	value_json TEXT, 
	PRIMARY KEY (trial_user_attribute_id), 
	UNIQUE (trial_id, "key"), 
	FOREIGN KEY(trial_id) REFERENCES trials (trial_id)
);
INSERT INTO trial_user_attributes VALUES(1,1,'hparams_search','"optuna"');
INSERT INTO trial_user_attributes VALUES(2,1,'case','"relu"');
INSERT INTO trial_user_attributes VALUES(3,1,'trainer.epochs','"1"');
INSERT INTO trial_user_attributes VALUES(4,1,'trainer.batch_size','"16"');
INSERT INTO trial_user_attributes VALUES(5,1,'dataset.image_size','"32"');
INSERT INTO trial_user_attributes VALUES(6,1,'dataset.train_size','"48"');
INSERT INTO trial_user_attributes VALUES(7,1,'dataset.val_size','"20"');
INSERT INTO trial_user_attributes VALUES(8,1,'dataset.test_size','"20"');
INSERT INTO trial_user_attributes VALUES(9,2,'hparams_search','"optuna"');
INSERT INTO trial_user_attributes VALUES(10,2,'case','"relu"');
INSERT INTO trial_user_attributes VALUES(11,2,'trainer.epochs','"1"');
INSERT INTO trial_user_attributes VALUES(12,2,'trainer.batch_size','"16"');
INSERT INTO trial_user_attributes VALUES(13,2,'dataset.image_size','"32"');
INSERT INTO trial_user_attributes VALUES(14,2,'dataset.train_size','"48"');
INSERT INTO trial_user_attributes VALUES(15,2,'dataset.val_size','"20"');
INSERT INTO trial_user_attributes VALUES(16,2,'dataset.test_size','"20"');
CREATE TABLE trial_system_attributes (
	trial_system_attribute_id INTEGER NOT NULL, 
	trial_id INTEGER, 
	"key" VARCHAR(512), 
	value_json TEXT, 
	PRIMARY KEY (trial_system_attribute_id), 
	UNIQUE (trial_id, "key"), 
	FOREIGN KEY(trial_id) REFERENCES trials (trial_id)
);
CREATE TABLE trial_params (
	param_id INTEGER NOT NULL, 
	trial_id INTEGER, 
	param_name VARCHAR(512), 
	param_value FLOAT, 
	distribution_json TEXT, 
	PRIMARY KEY (param_id), 
	UNIQUE (trial_id, param_name), 
	FOREIGN KEY(trial_id) REFERENCES trials (trial_id)
);
INSERT INTO trial_params VALUES(1,1,'optimizer.lr',0.0012520653814999472067,'{"name": "LogUniformDistribution", "attributes": {"low": 0.0001, "high": 0.01}}');
INSERT INTO trial_params VALUES(2,1,'scheduler.milestones',0.0,'{"name": "CategoricalDistribution", "attributes": {"choices": ["[0.4,0.7]", "[0.6]", "[0.5,0.75]", "[0.3,0.6,0.9]"]}}');
INSERT INTO trial_params VALUES(3,1,'scheduler.gamma',0.358357645226662469,'{"name": "UniformDistribution", "attributes": {"low": 0.1, "high": 0.5}}');
INSERT INTO trial_params VALUES(4,2,'optimizer.lr',0.00075019544436201283932,'{"name": "LogUniformDistribution", "attributes": {"low": 0.0001, "high": 0.01}}');
INSERT INTO trial_params VALUES(5,2,'scheduler.milestones',1.0,'{"name": "CategoricalDistribution", "attributes": {"choices": ["[0.4,0.7]", "[0.6]", "[0.5,0.75]", "[0.3,0.6,0.9]"]}}');
INSERT INTO trial_params VALUES(6,2,'scheduler.gamma',0.31155796790116180305,'{"name": "UniformDistribution", "attributes": {"low": 0.1, "high": 0.5}}');
CREATE TABLE trial_values (
	trial_value_id INTEGER NOT NULL, 
	trial_id INTEGER NOT NULL, 
	objective INTEGER NOT NULL, 
	value FLOAT NOT NULL, 
	PRIMARY KEY (trial_value_id), 
	UNIQUE (trial_id, objective), 
	FOREIGN KEY(trial_id) REFERENCES trials (trial_id)
);
INSERT INTO trial_values VALUES(1,1,0,0.050000000000000002775);
INSERT INTO trial_values VALUES(2,2,0,0.10000000000000000555);
CREATE TABLE trial_intermediate_values (
	trial_intermediate_value_id INTEGER NOT NULL, 
	trial_id INTEGER NOT NULL, 
	step INTEGER NOT NULL, 
	intermediate_value FLOAT NOT NULL, 
	PRIMARY KEY (trial_intermediate_value_id), 
	UNIQUE (trial_id, step), 
	FOREIGN KEY(trial_id) REFERENCES trials (trial_id)
);
CREATE TABLE trial_heartbeats (
	trial_heartbeat_id INTEGER NOT NULL, 
	trial_id INTEGER NOT NULL, 
	heartbeat DATETIME NOT NULL, 
	PRIMARY KEY (trial_heartbeat_id), 
	UNIQUE (trial_id), 
	FOREIGN KEY(trial_id) REFERENCES trials (trial_id)
);
CREATE TABLE alembic_version (
	version_num VARCHAR(32) NOT NULL, 
	CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
);
INSERT INTO alembic_version VALUES('v2.6.0.a');
CREATE UNIQUE INDEX ix_studies_study_name ON studies (study_name);
COMMIT;
