-- The competent body of a fee order's service (from the portal's fee answer): where the bus delivers its notice.
ALTER TABLE orders ADD COLUMN body text;
