// Implementation pending (being written in this session).
