"""Which representation-error structure do validation fields choose?"""
