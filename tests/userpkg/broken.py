raise ImportError("this user module is broken on purpose")
