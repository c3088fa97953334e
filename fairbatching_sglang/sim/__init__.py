"""Virtual-time replay of traces under SGLang's stock policies, Sarathi and FairBatching."""
