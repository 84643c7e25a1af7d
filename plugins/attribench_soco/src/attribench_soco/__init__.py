"""attribench-soco: Soundness and completeness (Li, Zhang et al. 2024), ROAD, Deletion/Insertion."""
