# A VPC is imported by its id.
terraform import l2vpc_vpc.example vpc-0123456789ab
