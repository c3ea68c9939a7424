-- No statement reads assets by owner (a user's images are found through their jobs); every instant claim
-- rewrote an entry of this index for each image it moved to the claimer.
DROP INDEX `assets_owner_idx`;
