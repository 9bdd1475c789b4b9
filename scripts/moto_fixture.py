#!/usr/bin/env python3
"""Creates a VPC, a subnet and two tagged instances in a moto server and prints what
flowlog should find for them, as JSON. Used by tests/enrich.rs (live ENI inventory).

usage: moto_fixture.py ENDPOINT_URL
"""
import json
import sys

import urllib.request

import boto3

# A fresh account each time: private addresses repeat across VPCs.
urllib.request.urlopen(urllib.request.Request(sys.argv[1] + "/moto-api/reset", method="POST")).read()

ec2 = boto3.client("ec2", endpoint_url=sys.argv[1], region_name="us-east-1",
                   aws_access_key_id="testing", aws_secret_access_key="testing")
vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.3.0/24")["Subnet"]["SubnetId"]
sg = ec2.create_security_group(GroupName="web", Description="web", VpcId=vpc)["GroupId"]
out = []
for name, team in [("payments-api", "checkout"), ("ledger-db", "finance")]:
    instance = ec2.run_instances(
        ImageId="ami-12c6146b", MinCount=1, MaxCount=1, SubnetId=subnet, SecurityGroupIds=[sg],
        TagSpecifications=[{"ResourceType": "instance",
                            "Tags": [{"Key": "Name", "Value": name}, {"Key": "team", "Value": team}]}],
    )["Instances"][0]
    eni = instance["NetworkInterfaces"][0]
    out.append({"instance_id": instance["InstanceId"], "name": name, "team": team,
                "eni": eni["NetworkInterfaceId"], "ip": eni["PrivateIpAddress"],
                "subnet": subnet, "vpc": vpc, "sg": sg})
print(json.dumps(out))
