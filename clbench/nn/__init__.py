"""Neural-network substrate: masked layers shared by PackNet, PAE and CPG, and plain backbones."""
