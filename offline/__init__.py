"""Run the Pulumi programs of this repository without a cloud: recording mocks and the offline plan."""
